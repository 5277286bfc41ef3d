"""Builds the optional C extensions; everything else is in pyproject.toml.

The extensions are optional: without a compiler, or with WSEND_NO_EXTENSIONS=1 set, wsend
installs and runs its pure-Python twin of every compiled function.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("WSEND_NO_EXTENSIONS"):
    ext_modules += [
        Extension(
            "wsend.protocol._speedups",
            sources=["src/wsend/protocol/_speedups.c"],
            depends=["src/wsend/protocol/_framing.h"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
        Extension(
            "wsend.asyncio._fastpath",
            sources=[
                "src/wsend/asyncio/_fastpath.c",
                "src/wsend/asyncio/_fastpath_paths.c",
                "src/wsend/asyncio/_fastpath_waiter.c",
            ],
            depends=["src/wsend/asyncio/_fastpath.h", "src/wsend/protocol/_framing.h"],
            include_dirs=["src/wsend/protocol"],
            # Its parts share functions: only the module's init function is exported.
            extra_compile_args=["-O3", "-fvisibility=hidden"],
            optional=True,
        ),
    ]

setup(ext_modules=ext_modules)

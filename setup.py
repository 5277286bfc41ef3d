"""Builds the optional C extension; everything else is in pyproject.toml.

The extension is optional: without a compiler, or with WSEND_NO_EXTENSIONS=1 set, wsend
installs and runs its pure-Python twin of every compiled function.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("WSEND_NO_EXTENSIONS"):
    ext_modules.append(
        Extension(
            "wsend.protocol._speedups",
            sources=["src/wsend/protocol/_speedups.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)

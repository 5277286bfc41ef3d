"""Side-by-side benchmarks of wsend against picows, aiohttp, websockets and raw asyncio TCP.

Run ``bench/run`` (installs the ``bench`` extra, then runs ``python -m bench``); see
``bench/README.md`` for the scenarios, the options and how to read the results.
"""

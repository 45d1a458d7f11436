# An asyncio service "pyaio" with async methods, linked to the hub at sys.argv[1]; it prints
# "ready" once linked and serving, and runs until Ctrl-C.
import asyncio
import sys

from netsvc import aio


async def main(address):
    async with aio.Runtime() as rt:
        service = rt.service("pyaio")

        @service.export
        async def add(a, b):
            return a + b

        @service.export
        async def slow(seconds):
            print("slow", seconds, flush=True)
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                # The caller gave up: netsvc told this side, which cancels the coroutine.
                print("cancelled", seconds, flush=True)
                raise
            return seconds

        @service.export
        async def fail():
            raise aio.Failure(7, "Out of paper", "printer", "tray 2")

        @service.export
        def crash():
            raise ZeroDivisionError("division by zero in a method")

        connector = await rt.client().connect(address, retry=0.2, timeout=None)
        print("ready", connector.address, flush=True)
        await asyncio.Event().wait()


try:
    asyncio.run(main(sys.argv[1]))
except KeyboardInterrupt:
    pass

# Calls echo.echo through the exchange and prints the result (or the failure), then stops:
# serviceEndPoint, processResponse and processFailure as in the original manual.
import os
import sys

import netsvc


class Client(netsvc.Service):
    def __init__(self, target, args):
        netsvc.Service.__init__(self)
        self.target = target
        self.args = args
        # The call waits until the target is visible.
        self.subscribeServiceName(self.announcement, target)

    def announcement(self, binding, status):
        if status != netsvc.SERVICE_AVAILABLE:
            return
        self.unsubscribeServiceName(self.target)
        endpoint = self.serviceEndPoint(binding)
        id = endpoint.echo(*self.args)
        self.processResponse(self.response, id)
        self.processFailure(self.failure, id, 10)

    def response(self, result):
        print("result", result)
        netsvc.Dispatcher().stop()

    def failure(self, error, description, origin, details):
        print("failure", error, description, origin, details)
        netsvc.Dispatcher().stop()


port = int(os.environ.get("NETSVC_PORT", "11111"))
exchange = netsvc.Exchange(netsvc.EXCHANGE_CLIENT)
exchange.connect("localhost", port, 1)
client = Client(sys.argv[1] if len(sys.argv) > 1 else "echo", sys.argv[2:])
netsvc.Dispatcher().run()

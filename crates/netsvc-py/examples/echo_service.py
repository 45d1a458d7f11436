# The seed's program: a service in Python, a client of the exchange on port 11111
# (NETSVC_PORT overrides it, for the tests).
import os

import netsvc


class Echo(netsvc.Service):
    def __init__(self):
        netsvc.Service.__init__(self, "echo")
        self.exportMethod(self.echo)

    def echo(self, *args):
        return args


host = "localhost"
port = int(os.environ.get("NETSVC_PORT", "11111"))
retry = 5
exchange = netsvc.Exchange(netsvc.EXCHANGE_CLIENT)
exchange.connect(host, port, retry)
echo = Echo()
netsvc.Dispatcher().run()

# Prints the reports of every service named sys.argv[1] matching sys.argv[2], then stops
# after sys.argv[3] of them: monitorReports as in the original manual.
import os
import sys

import netsvc


class Subscriber(netsvc.Service):
    def __init__(self, publisher, pattern, count):
        netsvc.Service.__init__(self)
        self.count = count
        self.monitorReports(self.report, publisher, pattern)

    def report(self, service, subject, content):
        print("report", service, subject, repr(content), flush=True)
        self.count -= 1
        if self.count == 0:
            netsvc.Dispatcher().stop()


port = int(os.environ.get("NETSVC_PORT", "11111"))
exchange = netsvc.Exchange(netsvc.EXCHANGE_CLIENT)
exchange.connect("localhost", port, 1)
subscriber = Subscriber(sys.argv[1], sys.argv[2], int(sys.argv[3]))
netsvc.Dispatcher().run()

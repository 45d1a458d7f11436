# Publishes reports: "news.cached" with a lifetime (late subscribers get it from the cache)
# and "news.live" every second with none. Exits on Ctrl-C.
import os
import sys

import netsvc


class Publisher(netsvc.Service):
    def __init__(self, lifetime):
        # Hidden until the first report is published, so that no subscriber can see the
        # service before it.
        netsvc.Service.__init__(self, "news", visibility=netsvc.SERVICE_HIDDEN)
        self.count = 0
        self.publishReport("news.cached", {"headline": "cached"}, lifetime)
        self.announceAvailability()
        self.startTimer(self.tick, 1.0)

    def tick(self):
        self.count += 1
        self.publishReport("news.live", self.count)
        self.startTimer(self.tick, 1.0)


port = int(os.environ.get("NETSVC_PORT", "11111"))
exchange = netsvc.Exchange(netsvc.EXCHANGE_CLIENT)
exchange.connect("localhost", port, 1)
publisher = Publisher(int(sys.argv[1]) if len(sys.argv) > 1 else -1)
print("publishing", flush=True)
netsvc.Dispatcher().run()

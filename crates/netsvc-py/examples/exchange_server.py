# The seed's message exchange server: a hub that Python and Rust clients connect to.
import os

import netsvc

port = int(os.environ.get("NETSVC_PORT", "11111"))
exchange = netsvc.Exchange(netsvc.EXCHANGE_SERVER)
exchange.listen(port)
netsvc.Dispatcher().run()

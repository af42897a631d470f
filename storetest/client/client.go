// Package client puts the real whatsmeow Client into a storetest run:
// import it for its side effect where a test sets storetest.Options.Client,
//
//	import _ "github.com/badmac/badmac/storetest/client"
//
// storetest alone does not compile the real client (whatsmeow's Client,
// badmac's loopback fake server); this package registers realclient.Open
// with storetest.RegisterClient.
package client

import (
	"github.com/badmac/badmac/realclient"
	"github.com/badmac/badmac/storetest"
)

func init() { storetest.RegisterClient(realclient.Open) }

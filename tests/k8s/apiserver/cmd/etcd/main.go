// etcd, the version kube-apiserver's module requires, for the webhook's end-to-end test.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

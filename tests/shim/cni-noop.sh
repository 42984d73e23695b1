#!/bin/sh
# A CNI plugin for the shim tests: the CRI plugin wants a pod network, and no bridge or
# iptables rule may be made on this host. Installed as two plugins:
#   loopback      brings `lo` up in the pod's network namespace (what the real one does)
#   sgshim-noop   configures nothing and reports an eth0 with 192.0.2.10/24 (TEST-NET-1,
#                 never routed: nothing is sent to it), which the CRI plugin records as pod IP
# CNI protocol: CNI_COMMAND ADD|DEL|CHECK|VERSION, the network config on stdin, result on stdout.
cat >/dev/null
v='"cniVersion":"0.4.0"'
case $CNI_COMMAND in
    VERSION) echo "{$v,\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\"]}" ;;
    ADD)
        if [ "${0##*/}" = loopback ]; then
            nsenter --net="$CNI_NETNS" ip link set lo up || exit 1
            echo "{$v,\"interfaces\":[{\"name\":\"lo\",\"sandbox\":\"$CNI_NETNS\"}],\"ips\":[{\"version\":\"4\",\"address\":\"127.0.0.1/8\",\"interface\":0}]}"
        else
            echo "{$v,\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"$CNI_NETNS\"}],\"ips\":[{\"version\":\"4\",\"address\":\"192.0.2.10/24\",\"interface\":0}]}"
        fi ;;
    DEL|CHECK) ;;
    *) echo "{$v,\"code\":4,\"msg\":\"unknown CNI_COMMAND $CNI_COMMAND\"}"; exit 1 ;;
esac

#!/bin/sh
# A device that greets, reads one request and dies.
echo '{"v":1,"hello":"badmac device v1","device":"fake@crash","variant":"stock"}'
read -r line
echo "fake device: out of memory" >&2
exit 3

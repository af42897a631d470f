#!/bin/sh
# A device that greets correctly, then answers every request with a line that is not JSON.
echo '{"v":1,"hello":"badmac device v1","device":"fake@malformed","variant":"stock"}'
while read -r line; do echo '{"v":1,"id":'; done

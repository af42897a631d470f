#!/bin/sh
# A device that greets, then reads requests and never answers.
echo '{"v":1,"hello":"badmac device v1","device":"fake@silent","variant":"stock"}'
while read -r line; do :; done

#!/bin/sh
# A device that answers with valid JSON for the wrong request id.
echo '{"v":1,"hello":"badmac device v1","device":"fake@wrongid","variant":"stock"}'
while read -r line; do echo '{"v":1,"id":99,"ok":true,"events":[]}'; done

#!/bin/sh
# A device that speaks another protocol.
echo '{"v":2,"hello":"some other protocol","device":"fake@nohello"}'
while read -r line; do :; done

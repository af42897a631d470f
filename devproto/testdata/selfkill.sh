#!/bin/sh
# A device that kills itself with SIGKILL on its first request, as the
# whatsmeow child does at its failpoint (-die-after).
echo '{"v":1,"hello":"badmac device v1","device":"fake","variant":"x"}'
read line
kill -9 $$

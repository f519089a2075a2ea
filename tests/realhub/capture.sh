#!/bin/bash
# Capture raw XML-RPC responses from a running realhub (see /work/shared/realhub/REALHUB.md)
# into tests/data/realhub/*.xml, for the decoder tests in tests/xmlrpc_realhub.rs.
# Usage: tests/realhub/capture.sh [outdir]      (the realhub must be up)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../data/realhub}
eval "$(/work/shared/realhub/realhub.sh env)"
hub=$REALHUB_SERVER
mkdir -p "$out"

call() {  # call OUTNAME METHOD PARAMS_XML [session headers...]
    local name=$1 method=$2 params=$3; shift 3
    curl -sS --fail -H 'Content-Type: text/xml' -H 'User-Agent: koji/1' "$@" \
        --data-binary "<?xml version='1.0'?>
<methodCall><methodName>$method</methodName><params>$params</params></methodCall>" \
        "$hub" > "$out/$name.xml.tmp"
    mv "$out/$name.xml.tmp" "$out/$name.xml"
}
p() { printf '<param><value>%s</value></param>' "$1"; }
kw() { printf '<param><value><struct>%s<member><name>__starstar</name><value><boolean>1</boolean></value></member></struct></value></param>' "$1"; }
m() { printf '<member><name>%s</name><value>%s</value></member>' "$1" "$2"; }

# anonymous calls
call getKojiVersion getKojiVersion ""
call echo echo "$(p '<string>OK</string>')"
call getBuildConfig getBuildConfig "$(p '<string>dist-build</string>')"
call fault_invalid_method noSuchMethod ""
call fault_parameter getBuildConfig "$(p '<int>1</int>')$(p '<int>2</int>')$(p '<int>3</int>')$(p '<int>4</int>')"
call fault_unknown_tag getBuildConfig "$(p '<string>no-such-tag-here</string>')"

# a task to look at (admin creates it), and host calls as builder2 (disabled, so the
# scheduler never gives it work)
task=$(koji-admin call --python makeTask '"sleep"' '[1]' | tail -1)
call getTaskInfo_request getTaskInfo "$(p "<int>$task</int>")$(kw "$(m request '<boolean>1</boolean>')")"
call getTaskInfo_missing getTaskInfo "$(p '<int>99999999</int>')"
call fault_getTaskResult_unfinished getTaskResult "$(p "<int>$task</int>")"

login=$(curl -sS -H 'Content-Type: text/xml' --data-binary "<?xml version='1.0'?>
<methodCall><methodName>login</methodName><params>$(p '<string>builder2</string>')$(p '<string>builder2-pw</string>')</params></methodCall>" "$hub")
printf '%s' "$login" | sed -e "s/[0-9]*-[A-Za-z0-9]\{19\}/SESSIONKEY/" > "$out/login.xml"
sid=$(printf '%s' "$login" | tr -d '\n' | sed -n 's/.*session-id<\/name>[^0-9]*\([0-9]*\).*/\1/p')
key=$(printf '%s' "$login" | tr -d '\n' | sed -n 's/.*session-key<\/name><value><string>\([^<]*\)<.*/\1/p')
n=0
H=()
sess() { n=$((n+1)); H=(-H "Koji-Session-Id: $sid" -H "Koji-Session-Key: $key" -H "Koji-Session-Callnum: $n" -H "Koji-Callnum: $n"); }
sess; call fault_not_exclusive host.getID "" "${H[@]}"
sess; call exclusiveSession exclusiveSession "$(kw "$(m force '<boolean>1</boolean>')")" "${H[@]}"
sess; call host_getID host.getID "" "${H[@]}"
sess; call host_getHost host.getHost "" "${H[@]}"
sess; call getSessionInfo getSessionInfo "" "${H[@]}"
sess; call host_getLoadData host.getLoadData "" "${H[@]}"
sess; call host_getHostTasks host.getHostTasks "" "${H[@]}"
sess; call listBuildroots listBuildroots "$(kw "$(m hostID '<int>1</int>')$(m state '<array><data><value><int>0</int></value><value><int>1</int></value><value><int>2</int></value></data></array>')")" "${H[@]}"
sess; call host_openTask host.openTask "$(p "<int>$task</int>")" "${H[@]}"
sess; call host_openTask_again host.openTask "$(p "<int>$task</int>")" "${H[@]}"
sess; call host_updateHost host.updateHost "$(p '<double>0.0</double>')$(p '<boolean>0</boolean>')" "${H[@]}"
# the same call number again, for a call that wrote: RetryError
n=$((n-1))
sess; call fault_retry host.setTaskWeight "$(p "<int>$task</int>")$(p '<double>0.5</double>')" "${H[@]}"
n=$((n-1))
sess; call fault_retry host.setTaskWeight "$(p "<int>$task</int>")$(p '<double>0.5</double>')" "${H[@]}"
n=$((n-3))
sess; call fault_sequence host.getID "" "${H[@]}"
n=$((n+10))
sess; call multiCall multiCall "$(p "<array><data><value><struct>$(m methodName '<string>echo</string>')$(m params '<array><data><value><int>1</int></value></data></array>')</struct></value><value><struct>$(m methodName '<string>nosuch</string>')$(m params '<array><data></data></array>')</struct></value></data></array>")" "${H[@]}"
sess
call host_failTask host.failTask "$(p "<int>$task</int>")$(p "<string>&lt;?xml version='1.0'?&gt;
&lt;methodResponse&gt;
&lt;fault&gt;
&lt;value&gt;&lt;struct&gt;
&lt;member&gt;
&lt;name&gt;faultCode&lt;/name&gt;
&lt;value&gt;&lt;int&gt;1005&lt;/int&gt;&lt;/value&gt;
&lt;/member&gt;
&lt;member&gt;
&lt;name&gt;faultString&lt;/name&gt;
&lt;value&gt;&lt;string&gt;captured failure&lt;/string&gt;&lt;/value&gt;
&lt;/member&gt;
&lt;/struct&gt;&lt;/value&gt;
&lt;/fault&gt;
&lt;/methodResponse&gt;
</string>")" "${H[@]}"
call fault_getTaskResult_failed getTaskResult "$(p "<int>$task</int>")"
call getTaskInfo_failed getTaskInfo "$(p "<int>$task</int>")"
sess; call logout logout "" "${H[@]}"
call fault_bad_session host.getID "" -H "Koji-Session-Id: $sid" -H "Koji-Session-Key: $key"
ls "$out"

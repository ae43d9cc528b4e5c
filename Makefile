# The two commands a newcomer runs: `make demo` and `make test`. Both set up .venv first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_output

.PHONY: setup demo test lint bench clean reference

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eeg2image demo --workdir $(DEMO_DIR)

test: lint
	$(BIN)/python -m pytest -q -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks.embed_speed
	$(BIN)/python -m benchmarks.train_speed
	$(BIN)/python -m benchmarks.generate_speed

# The reference system's table on real THINGS-EEG2: make reference THINGS=/data/things-eeg2 SUBJECT=1
# (needs RN50/openai OpenCLIP weights in the Hugging Face cache or WEIGHTS=/path/to/RN50.pt; a GPU).
THINGS ?= $(error set THINGS=/path/to/things-eeg2 (raw_data/ and image_set/))
SUBJECT ?= 1
REF_DIR ?= reference_run
WEIGHTS_ARG = $(if $(WEIGHTS),--weights $(WEIGHTS),)
# EVNET='evnet-clip:RN50/openai;input=clip' feeds EVNet CLIP-normalised pixels, as the reference did.
EVNET ?= evnet-clip:RN50/openai
reference: $(STAMP)
	$(BIN)/eeg2image preprocess $(THINGS) $(REF_DIR)/preprocessed --subjects $(SUBJECT) --preset nice
	$(BIN)/eeg2image embed $(THINGS) $(REF_DIR)/embeddings --encoder openclip:RN50/openai --views blur8 $(WEIGHTS_ARG)
	$(BIN)/eeg2image embed $(THINGS) $(REF_DIR)/embeddings --encoder '$(EVNET)' --views original $(WEIGHTS_ARG)
	$(BIN)/eeg2image train $(REF_DIR)/run-sub-$(SUBJECT) --preset reference --subjects $(SUBJECT) \
		--preprocessed $(REF_DIR)/preprocessed --store $(REF_DIR)/embeddings --dataset $(THINGS) \
		--set 'data.evnet_encoder=$(EVNET)'
	$(BIN)/eeg2image evaluate $(REF_DIR)/run-sub-$(SUBJECT)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache

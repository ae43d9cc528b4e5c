# The two commands a newcomer runs: `make demo` and `make test`. Both set up .venv first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_output

.PHONY: setup demo test lint bench clean reference reference-recon rehearse

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eeg2image demo --workdir $(DEMO_DIR)

test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

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
# Ordinary options appended to the stages of both reference commands (empty: the reference's own settings), e.g.
# TRAIN_ARGS='--epochs 1 --seeds 0' ALIGN_ARGS='--set align.epochs=1' RECON_ARGS='--set generate.size=256'
# (`make rehearse` reduces the counts this way, and only this way).
TRAIN_ARGS ?=
ALIGN_ARGS ?=
RECON_ARGS ?=
reference: $(STAMP)
	$(BIN)/eeg2image preprocess $(THINGS) $(REF_DIR)/preprocessed --subjects $(SUBJECT) --preset nice
	$(BIN)/eeg2image embed $(THINGS) $(REF_DIR)/embeddings --encoder openclip:RN50/openai --views blur8 $(WEIGHTS_ARG)
	$(BIN)/eeg2image embed $(THINGS) $(REF_DIR)/embeddings --encoder '$(EVNET)' --views original $(WEIGHTS_ARG)
	$(BIN)/eeg2image train $(REF_DIR)/run-sub-$(SUBJECT) --preset reference --subjects $(SUBJECT) \
		--preprocessed $(REF_DIR)/preprocessed --store $(REF_DIR)/embeddings --dataset $(THINGS) \
		--set 'data.evnet_encoder=$(EVNET)' $(TRAIN_ARGS)
	$(BIN)/eeg2image evaluate $(REF_DIR)/run-sub-$(SUBJECT)

# The reference's reconstruction table (its Task 2) on real THINGS-EEG2: make reference-recon THINGS=/data/things-eeg2
# SUBJECT=1. Needs in the Hugging Face cache (never downloaded): laion/CLIP-ViT-H-14-laion2B-s32B-b79K (experts'
# targets, texts), LiheYoung/depth-anything-base-hf (depth maps), h94/IP-Adapter (models/image_encoder and
# sdxl_models/ip-adapter_sdxl_vit-h.safetensors), stabilityai/sdxl-turbo (its vae/ also gives the low-level path's
# latents of the 512-px images, 4 x 64 x 64); for the metrics the torchvision weights and OpenAI ViT-L/14 in the
# torch / HF caches (a missing one is reported unavailable); a GPU. The table's rows: eeg (the reference's
# text-to-image; INIT=0.5 starts SDXL from the EEG-predicted latent instead), low-level, shuffled, nearest, linear,
# ceiling (docs/reconstruction.md).
RECON_DIR ?= reference_recon
VITH = openclip:ViT-H-14/laion2b_s32b_b79k
IPA = ipadapter:h94/IP-Adapter
LATENTS = vae:stabilityai/sdxl-turbo;size=512
INIT ?= 0
RECON_ROWS = eeg,low-level,shuffled,nearest,linear,ceiling
RECON_VIEWS = original,edges,depth:model=LiheYoung/depth-anything-base-hf
reference-recon: $(STAMP)
	$(BIN)/eeg2image preprocess $(THINGS) $(RECON_DIR)/preprocessed --subjects $(SUBJECT) --preset ubp
	$(BIN)/eeg2image embed $(THINGS) $(RECON_DIR)/embeddings --encoder $(VITH) --encoder $(IPA) --views $(RECON_VIEWS) \
		--text-encoder $(VITH)
	$(BIN)/eeg2image embed $(THINGS) $(RECON_DIR)/embeddings --encoder '$(LATENTS)' --views original:size=512
	$(BIN)/eeg2image train $(RECON_DIR)/run-sub-$(SUBJECT) --preset cogcap --subjects $(SUBJECT) \
		--preprocessed $(RECON_DIR)/preprocessed --store $(RECON_DIR)/embeddings --dataset $(THINGS) $(TRAIN_ARGS)
	$(BIN)/eeg2image evaluate $(RECON_DIR)/run-sub-$(SUBJECT)
	$(BIN)/eeg2image align $(RECON_DIR)/run-sub-$(SUBJECT) --encoder $(IPA) \
		--set target_views.depth=depth-depth-anything-base-hf --set 'low_level=$(LATENTS)' $(ALIGN_ARGS)
	$(BIN)/eeg2image reconstruct $(RECON_DIR)/run-sub-$(SUBJECT)/align --out $(RECON_DIR)/images --generator sdxl \
		--rows $(RECON_ROWS) --set generate.init_strength=$(INIT) $(RECON_ARGS)
	$(BIN)/eeg2image evaluate-recon $(RECON_DIR)/images --dataset $(THINGS)
	$(BIN)/eeg2image table $(RECON_DIR)/images

# Both reference commands rehearsed at real size, offline: every network at its true architecture with random
# weights in the caches' own layouts (~30 GB in $(REHEARSE_DIR)/cache), the tiny simulated dataset, counts cut
# through TRAIN_ARGS / ALIGN_ARGS / RECON_ARGS only; per stage seconds and peak memory (docs/performance.md).
REHEARSE_DIR ?= rehearsal
rehearse: $(STAMP)
	$(BIN)/python -m benchmarks.rehearse run $(REHEARSE_DIR)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache

# Sideman developer entry points. Every target sets itself up on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

DATA   ?= ../shared/data

.PHONY: setup system-packages sample-duets bench-audio setup-train run test test-all bench bench-reaction bench-soak bench-memory eval-listen eval-answers train-markov train train-more train-gpu size-budget finetune-mckenna eval-model export fuzz-din clean image screens

# The venv is rebuilt only when pyproject.toml changes (idempotent set-up).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## The Debian/Ubuntu packages (JACK, ALSA, FluidSynth and its piano soundfonts, ...): sudo apt-get, only what is missing.
system-packages:
	bash .ci/system-packages

# Training extras on top (peft for LoRA fine-tuning).
TRAIN_STAMP := $(VENV)/.installed-train
$(TRAIN_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[train,test]'
	touch $(TRAIN_STAMP)

setup-train: $(TRAIN_STAMP)

## The box on its default voice; virtual ports when no MIDI hardware is found. Extra flags: make run ARGS="--mode ..."
run: setup
	$(VENV)/bin/sideman run $(ARGS)

## The whole fast suite (integration tests start their own JACK dummy server).
test: setup
	$(PY) -m pytest -q $(ARGS)

## Including slow tests (long fuzz runs).
test-all: setup
	$(PY) -m pytest -q -m '' $(ARGS)

## Benchmarks print JSON with medians and p99, each against a baseline measured in the same run.
bench: setup
	$(VENV)/bin/sideman-bench thru --json $(ARGS)
	$(VENV)/bin/sideman-bench thru --answering --json $(ARGS)
	$(VENV)/bin/sideman-bench thru --flood --json $(ARGS)
	$(VENV)/bin/sideman-bench reaction --json $(ARGS)
	$(VENV)/bin/sideman-bench reaction --json --voice markov $(ARGS)
	$(VENV)/bin/sideman-bench model --json $(ARGS)
	$(VENV)/bin/sideman-bench duet --json $(ARGS)
	$(VENV)/bin/sideman-bench audio --json $(ARGS)

## The built-in piano: note-on -> sound per audio period size, vs the soundfont's own attack.
bench-audio: setup
	$(VENV)/bin/sideman-bench audio --json $(ARGS)

bench-reaction: setup
	$(VENV)/bin/sideman-bench reaction --json $(ARGS)

## An hour on stage: the box duets through every mode; a report every 5 minutes on stderr.
MINUTES ?= 60
bench-soak: setup
	$(VENV)/bin/sideman-bench soak --json --minutes $(MINUTES) $(ARGS)

## The voice's own memory over an hour's set, in minutes: the soak's player on a simulated clock.
bench-memory: setup
	$(VENV)/bin/sideman-bench memory --json $(ARGS)

## Listening accuracy (chords vs chord_midi.txt, beats vs beat_midi.txt) on a POP909-like folder.
eval-listen: setup
	$(VENV)/bin/sideman-train eval-listen $(DATA)/pop909 --json $(ARGS)

## Rebuild the shipped Markov tables from PiJAMA (train split); see models/markov/MODEL_CARD.md.
train-markov: setup
	$(VENV)/bin/sideman-train markov --pijama $(DATA)/pijama --pianist "Brad Mehldau" --split train --name mehldau --out models/markov/
	$(VENV)/bin/sideman-train markov --pijama $(DATA)/pijama --pianist "Art Tatum" --split train --name tatum --out models/markov/

## The shipped transformer (models/transformer): PiJAMA train split, selected on val, a 2-core CPU
## session (~100 min). Builds the corpus cache (cache/pijama) first when it is missing.
MODEL ?= models/transformer
train: setup-train
	$(VENV)/bin/sideman-train fit --config training/configs/pijama-cpu.toml --pijama $(DATA)/pijama --out $(MODEL) --max-minutes 100 $(ARGS)

## Another session's training of the shipped model, from its landed weights (training/configs/pijama-cpu-more.toml; bf16 where the CPU has it).
train-more: setup-train
	$(VENV)/bin/sideman-train fit --config training/configs/pijama-cpu-more.toml --init-from $(MODEL) --pijama $(DATA)/pijama --out $(MODEL) --max-minutes 90 $(ARGS)

## The shipped network trained on from its landed weights on a GPU machine, for GPU_MINUTES (training/configs/pijama-gpu.toml).
GPU_MINUTES ?= 8
train-gpu: setup-train
	$(VENV)/bin/sideman-train fit --config training/configs/pijama-gpu.toml --init-from $(MODEL) --pijama $(DATA)/pijama --out $(MODEL) --max-minutes $(GPU_MINUTES) $(ARGS)

## Which networks the box can afford: untrained ones of other sizes exported and timed on onnxruntime beside the shipped model.
size-budget: setup-train
	$(VENV)/bin/sideman-train size-budget --size wider-ff=192,4,4,3072 --size wider=256,4,4,2048 --size deeper=192,6,4,1536 --size gpu-15M=384,8,6,1536 $(ARGS)

## A style the base model never heard (Dave McKenna is left out of its training), from 50 of his files.
finetune-mckenna: setup-train
	$(VENV)/bin/sideman-train finetune --model $(MODEL) --pijama $(DATA)/pijama --pianist "Dave McKenna" --split train --limit 50 --name mckenna --init others --lr 2e-3 --steps 400 $(ARGS)

## The model card's figures: NLL per style vs the Markov baseline on Mehldau val, blend and harmony metrics, sample duets.
eval-model: setup
	$(VENV)/bin/sideman-train eval --model $(MODEL) --folder $(DATA)/pijama --pianist "Brad Mehldau" --split val --style mehldau --all-styles --partner tatum --samples $(MODEL)/samples --out $(MODEL)/eval-mehldau-val.json $(ARGS)
	$(VENV)/bin/sideman-train eval --model $(MODEL) --folder $(DATA)/pijama --pianist "Dave McKenna" --split val --style mckenna --all-styles --out $(MODEL)/eval-mckenna-val.json $(ARGS)

## MUSICIANSHIP.md's measures of the answers: WJazzD horn calls and Mehldau's val pairs, the voices
## beside silence timers and his own next phrases (README, Performance); JSON and piano rolls.
eval-answers: setup
	$(VENV)/bin/sideman-train eval-answers --wjazzd $(DATA)/wjazzd --pijama $(DATA)/pijama --out eval-answers $(ARGS)

## The README's sample duets: parts written in code, played by the transformer, rendered through the built-in piano.
sample-duets: setup-train
	$(VENV)/bin/sideman-train sample-duets --out docs/samples $(ARGS)

## ONNX graphs for the box's TensorRT build, with the parity check (see models/README.md).
export: setup
	$(VENV)/bin/sideman-train export --model $(MODEL) $(ARGS)

## The long DIN parser fuzz run (10^6 streams), documented in the README.
fuzz-din: setup
	$(VENV)/bin/sideman-bench fuzz-din --streams 1000000

clean:
	rm -rf $(VENV) build *.egg-info firmware_py/*.egg-info

## The box's image: dist/sideman_<version>_arm64.deb + dist/sideman_<version>_l4t-overlay.tar.gz (see image/README.md).
## WHEELHOUSE=1 also ships aarch64 cp310 wheels of the dependencies (pip download; needs network).
image: setup
	$(PY) image/build_image.py --out dist $(if $(WHEELHOUSE),--wheelhouse) $(ARGS)

## The README's pictures of the box (OLED screens, front panel), rendered by the screen tests through luma.
screens: setup
	SIDEMAN_SCREENSHOT_DIR=docs/box $(PY) -m pytest -q tests/test_panel_controller.py -k readme_pictures

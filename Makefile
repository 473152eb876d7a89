# Everything a fresh machine needs: `make app` (the app on the demo) and `make test` (all tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PORT   ?= 8501
# loopback only; HOST=0.0.0.0 opens the app to the network, behind a key (README, "Opening the app")
HOST   ?= 127.0.0.1
# pytest workers for `make test`: one per core, at most 4 (each holds TensorFlow and its fixtures)
WORKERS ?= $(shell n=$$(nproc); echo $$(( n < 4 ? n : 4 )))

.PHONY: app test setup browser demo clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -c "from fext.projection import warm; warm()"  # the map's compiled code, cached once
	touch $@

setup: $(VENV)/.installed

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
browser:
	@[ -x /usr/bin/chromium ] || { $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core; }

app: setup
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT)

demo: setup
	$(PY) -m fext demo

test: setup browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n $(WORKERS) --dist worksteal  # docs/TESTING.md

clean:
	rm -rf $(VENV) jobs index/_collections

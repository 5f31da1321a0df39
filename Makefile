# The two things a newcomer does: `make demo` (install + run the example) and `make test`.
PY ?= python3

.PHONY: deps install demo test bench annotate clean

deps:
	bash .ci/deps

install:
	$(PY) -m pip install -q -e '.[test]'

demo:
	$(PY) -m pip install -q . && bash config/demo.sh

test: deps install
	$(PY) -m pytest -q

# side-by-side benchmarks against nginx, HAProxy and a uvloop+httptools proxy (bench/)
bench:
	$(PY) -m bench

# Cython's HTML annotation of the hot path (yellow = Python interaction), for performance work
annotate:
	cd engine/_fast && for f in *.pyx; do $(PY) -m cython -3 -a $$f; done

clean:
	rm -rf build *.egg-info engine/_fast/*.c engine/_fast/*.so engine/_fast/*.html

# The two things a newcomer does: `make demo` (install + run the example) and `make test`.
PY ?= python3

.PHONY: deps install demo test test-debug bench annotate clean

deps:
	bash .ci/deps

install:
	$(PY) -m pip install -q -e '.[test]'

demo:
	$(PY) -m pip install -q . && bash config/demo.sh

test: deps install
	$(PY) -m pytest -q

# The debug build (docs/operations.md): live-object counters, which every test checks are
# released. The tests that start sluice or embed it, under the debug build; then the release
# build again, whatever the tests said. Built in place (what `SLUICE_DEBUG=1 pip install -e .`
# builds too, without resolving the dependencies again); after `make install`.
DEBUG_TESTS ?= tests/integration tests/runtime/test_admin_debug.py tests/_fast/test_debug.py \
	tests/test_embedding.py
test-debug:
	SLUICE_DEBUG=1 $(PY) setup.py -q build_ext --inplace -j 2
	status=0; \
	$(PY) -c 'from engine._fast import debug; assert debug.DEBUG_BUILD, "not the debug build"' \
		&& $(PY) -m pytest -q -p no:cacheprovider $(DEBUG_TESTS) || status=$$?; \
	$(PY) setup.py -q build_ext --inplace -j 2; \
	exit $$status

# side-by-side benchmarks against nginx, HAProxy and a uvloop+httptools proxy (bench/)
bench:
	$(PY) -m bench

# Cython's HTML annotation of the hot path (yellow = Python interaction), for performance work
annotate:
	cd engine/_fast && for f in *.pyx; do $(PY) -m cython -3 -a $$f; done

clean:
	rm -rf build *.egg-info engine/_fast/*.c engine/_fast/*.so engine/_fast/*.html

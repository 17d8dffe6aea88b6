# hipush — `make run` starts a server on the embedded default, `make test` runs the whole suite, then its
# Redis-facing part again on a local Redis Cluster.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the Python kit is installed into .venv as a copy (as users get it): its files count in the stamp too
KIT_FILES := $(sort $(wildcard clients/python/pyproject.toml clients/python/hipush_client/*.py))
STAMP := $(VENV)/.installed-$(shell cat requirements.txt $(KIT_FILES) | md5sum | cut -c1-12)

# The machine's services that .ci/run also tests against (own Redis db number; hipush's own tables).
EXTERNAL_REDIS ?= redis://127.0.0.1:6379/9
EXTERNAL_DATABASE ?= mysql+pymysql://root@127.0.0.1:3306/test

# The cluster pass of `make test`: the Redis-facing suite and the end-to-end delivery, no-loss and timer tests
# on a local Redis Cluster the tests start themselves (bench/cluster.py: 3 masters, 3 replicas).
CLUSTER_TESTS ?= tests/test_storage.py tests/test_queue.py tests/test_stats.py tests/test_properties.py \
	tests/test_comet.py tests/test_delivery_faults.py tests/test_timer_claims.py tests/test_guards.py \
	tests/test_terminals.py tests/test_walkthrough.py tests/test_cluster.py tests/test_retention.py \
	tests/test_stream.py tests/test_batch_publish.py tests/test_publish_truth.py

.PHONY: install js browser faketime redis-server java java-tools run test test-cluster test-external clean dist

$(STAMP): requirements.txt $(KIT_FILES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# The JS kit (clients/js): node and npm from Debian when missing, then its pinned dev dependencies (typescript, for
# tests/test_js_kit.py's type check) from the npm registry, again whenever package-lock.json changes
JS_STAMP := clients/js/node_modules/.installed

$(JS_STAMP): clients/js/package-lock.json
	test -x /usr/bin/npm || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm)
	cd clients/js && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

js: $(JS_STAMP)

# tests/test_browser.py drives Debian's chromium with Playwright (which never downloads a browser here)
browser:
	test -x /usr/bin/chromium || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

# tests/test_timer_claims.py runs a node whose clock is skewed by Debian's libfaketime (LD_PRELOAD)
faketime:
	test -x /usr/bin/faketime || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q faketime)

# the local Redis Cluster of the cluster tests runs Debian's redis-server (the embedded one has no cluster mode)
redis-server:
	test -x /usr/bin/redis-server || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server)

# The Java kit (clients/java): Debian's JDK compiles it (Java 8 source level) into a jar, and its JUnit 5 tests,
# which tests/test_java_kit.py runs against a real server. No Maven or Gradle.
JAVA_DIR := clients/java
JAVA_JAR := $(JAVA_DIR)/build/hipush-client.jar
JAVA_TESTS_BUILT := $(JAVA_DIR)/build/test-classes/.built
JUNIT_CONSOLE := /usr/share/java/junit-platform-console-standalone.jar
JAVA_SOURCES := $(sort $(wildcard $(JAVA_DIR)/src/io/hipush/*.java))
JAVA_TEST_SOURCES := $(sort $(wildcard $(JAVA_DIR)/test/io/hipush/*.java))
JAVAC := javac --release 8 -encoding UTF-8 -Xlint:all,-options -Werror

java-tools:
	test -x /usr/bin/javac && test -f $(JUNIT_CONSOLE) || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q default-jdk-headless junit5)

java: $(JAVA_JAR) $(JAVA_TESTS_BUILT)

$(JAVA_JAR): $(JAVA_SOURCES) | java-tools
	rm -rf $(JAVA_DIR)/build/classes && mkdir -p $(JAVA_DIR)/build/classes
	$(JAVAC) -d $(JAVA_DIR)/build/classes $(JAVA_SOURCES)
	jar cf $@ -C $(JAVA_DIR)/build/classes .

$(JAVA_TESTS_BUILT): $(JAVA_JAR) $(JAVA_TEST_SOURCES)
	rm -rf $(JAVA_DIR)/build/test-classes && mkdir -p $(JAVA_DIR)/build/test-classes
	$(JAVAC) -cp $(JAVA_JAR):$(JUNIT_CONSOLE) -d $(JAVA_DIR)/build/test-classes $(JAVA_TEST_SOURCES)
	touch $@

run: install
	@echo "hipush starts on http://$${HIPUSH_BIND:-127.0.0.1:8080} (data in $${HIPUSH_DATA_DIR:-./var})."
	@echo "In another terminal, register an app and follow README.md 'Try it':"
	@echo "    $(BIN)/python app.py create-app myapp"
	@echo "Operator console: http://$${HIPUSH_BIND:-127.0.0.1:8080}/console (log in as admin with HIPUSH_CONSOLE_PASSWORD)."
	@echo
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# TEST_JOBS pytest sessions at once (pytest-xdist, a test file per session at a time): most of a test's time is
# spent waiting on servers, so two sessions on two cores take little more than half as long as one.
TEST_JOBS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile

test: install js browser faketime redis-server java
	$(PYTEST)
	HIPUSH_TEST_REDIS_CLUSTER=1 $(PYTEST) $(CLUSTER_TESTS)

test-cluster: install redis-server
	HIPUSH_TEST_REDIS_CLUSTER=1 $(PYTEST) $(CLUSTER_TESTS)

test-external: install js browser faketime redis-server
	HIPUSH_TEST_REDIS_URL=$(EXTERNAL_REDIS) HIPUSH_TEST_DATABASE_URL=$(EXTERNAL_DATABASE) $(MAKE) test

clean:
	rm -rf $(VENV) var .pytest_cache dist $(JAVA_DIR)/build clients/js/node_modules clients/js/hipush.mjs

# the Python kit's wheel and sdist (hipush-client) and the JS kit's npm tarball (hipush-js), into dist/
dist: install js
	$(BIN)/python -m build --outdir dist clients/python
	cd clients/js && npm pack --pack-destination ../../dist

# Benchmark, hipush side by side with Nchan (bench/__init__.py; `.venv/bin/python -m bench --help` for the knobs).
# Installs what it needs itself: nginx + Nchan from Debian (when absent) and bench/requirements.txt into .venv.
# Results: bench/results/bench{,-quick}.md, .json and PNG charts. BENCH_ARGS adds options, e.g. --database sqlite.
BENCH_STAMP := $(VENV)/.bench-$(shell cat bench/requirements.txt 2>/dev/null | md5sum | cut -c1-12)

.PHONY: bench bench-quick bench-install

$(BENCH_STAMP): bench/requirements.txt $(STAMP)
	$(BIN)/pip install -q --disable-pip-version-check -r bench/requirements.txt
	rm -f $(VENV)/.bench-* && touch $(BENCH_STAMP)

bench-install: $(BENCH_STAMP)
	test -x /usr/sbin/nginx && test -f /usr/lib/nginx/modules/ngx_nchan_module.so || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light libnginx-mod-nchan)

bench: bench-install
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: bench-install
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

# The two set-up commands (see README.md). Everything they need is installed by the scripts.
.PHONY: demo test

# A local 3-broker cluster, fairlead in front of it, legacy clients under leader changes.
demo:
	tests/testbed/demo

# Every test: lints, unit tests, the real-cluster suite on Kafka 4.1, and the acceptance
# scenarios on Kafka 3.9 and the newest 4.x.
test:
	tests/run-all

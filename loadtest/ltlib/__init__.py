"""Load-test harness for renditions-lambda: emulated S3 + SQS, Lambda SQS event-source
mapping, Lambda Runtime API, reporting. Everything listens on and talks to 127.0.0.1."""

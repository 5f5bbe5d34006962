"""The exported record's keys in the spec's order, written out independently of the package
(so a test catches the implementation dropping or renaming one). Shared by the test modules."""

RECORD_KEYS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "model",
    "provider",
    "service_name",
    "user_id",
    "session_id",
    "status",
    "error_type",
    "error_message",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "metadata",
    "events",
    "prompt",
    "completion",
)

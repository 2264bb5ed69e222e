#!/usr/bin/env python3
"""Writes one JSON Schema per flowpilot health event detail type into this folder.

The schemas describe the whole EventBridge event as delivered to a target (envelope + detail).
They are a compatibility promise: add optional members freely; never remove or retype one.
Run: python3 infra/schemas/generate.py
"""
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent

TIME = {"type": "string", "format": "date-time"}
OPTIONAL_MEMBERS = {
    "flow_name": {"type": "string", "pattern": "^fp-[a-z0-9][a-z0-9-]*-(b[0-9]{4,}|live|live-g[1-9][0-9]*|m[1-9][0-9]*-s(0|[1-9][0-9]*))$",
                  "description": "AppFlow flow the event is about (the live flow of link generation N >= 2 is "
                                 "`fp-{workflow}-live-gN`; with --engine managed, step S of submission M is "
                                 "`fp-{workflow}-mM-sS` and the integration's flow `fp-{workflow}-mM-live`)"},
    "batch": {
        "type": "object",
        "description": "The batch window [start, end)",
        "required": ["index", "start", "end"],
        "properties": {"index": {"type": "integer", "minimum": 0,
                                 "description": "Batch number, from 0 as in the flow name (batch 2 runs flow fp-{workflow}-b0002)"},
                       "start": TIME, "end": TIME},
    },
    "attempt": {"type": "integer", "minimum": 1, "description": "Attempt number of the batch run"},
    "error": {"type": "string", "description": "AppFlow's error message for the failed run"},
    "transient": {"type": "boolean", "description": "Whether the failure was judged transient"},
    "retry_at": dict(TIME, description="When the retry will start"),
    "command": {"type": "string",
                "description": "The exact command to run next: the redrive or rebuild command, or the one "
                               "`recommendation` names (watch the workflow, look at the object type mapping)"},
    "recommendation": {"type": "string",
                       "description": "What to do next, in plain words (names the connector profile to reconnect, "
                                      "the object type mapping to fix, when a pause ends)"},
    "action": {"enum": ["redrive", "rebuild", "reconnect", "fix_mapping", "wait"],
               "description": "The recommendation for machines"},
    "connector_profile": {"type": "string", "minLength": 1,
                          "description": "The AppFlow connector profile (connection) a `reconnect` or `wait` is about"},
    "records_failed": {"type": "integer", "minimum": 0,
                       "description": "Records the run read but could not write to Customer Profiles"},
    "records_processed": {"type": "integer", "minimum": 0, "description": "Records the run read"},
    "max_record_failures": {"type": "integer", "minimum": 0,
                            "description": "The workflow's budget of record failures per batch run"},
    "halves": {
        "type": "array",
        "description": "The two batches a split batch's window now runs as, in window order: "
                       "[batch.start, mid) and [mid, batch.end)",
        "minItems": 2,
        "maxItems": 2,
        "items": {
            "type": "object",
            "required": ["index", "start", "end"],
            "properties": {"index": {"type": "integer", "minimum": 0,
                                     "description": "Batch number of the half (its flow is fp-{workflow}-b{index:04})"},
                           "start": TIME, "end": TIME},
        },
    },
}
BASE = {
    "event_id": {"type": "string", "minLength": 1,
                 "description": "Stable id; the same occurrence always carries the same id (de-duplicate on it)"},
    "workflow_id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,39}$"},
    "domain": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
    "object_type": {"type": "string", "minLength": 1, "maxLength": 255},
    "connector": {"enum": ["salesforce", "marketo", "servicenow", "zendesk", "s3"]},
    "status": {"enum": ["pending", "backfilling", "linking", "live", "degraded", "rebuilding",
                        "failed", "cancelled"],
               "description": "Workflow status after the change this event reports"},
    "progress": {
        "type": "object",
        "required": ["batches_done", "batches_total", "records"],
        "properties": {
            "batches_done": {"type": "integer", "minimum": 0},
            "batches_total": {"type": "integer", "minimum": 0},
            "records": {"type": "integer", "minimum": 0},
        },
    },
    "time": TIME,
}

# detail-type -> (slug, description, extra required members, extra constraints)
EVENTS = {
    "Workflow Started": ("workflow-started", "A workflow began its bulk phase (or linking).", [], {}),
    "Batch Succeeded": ("batch-succeeded", "A batch run ended successfully; its flow is deleted.",
                        ["flow_name", "batch", "attempt"], {}),
    "Batch Retry Scheduled": ("batch-retry-scheduled", "A batch run failed transiently; a retry is scheduled.",
                              ["flow_name", "batch", "attempt", "error", "transient", "retry_at"],
                              {"transient": {"const": True}}),
    "Batch Failed": ("batch-failed", "A batch failed permanently or ran out of retries.",
                     ["flow_name", "batch", "attempt", "error", "transient"], {}),
    "Workflow Completed": ("workflow-completed", "Every batch succeeded and the continuous integration is linked.",
                           [], {}),
    "Workflow Failed": ("workflow-failed", "The workflow stopped; `command` redrives it from the failed batch.",
                        ["error", "command"], {}),
    "Workflow Stalled": ("workflow-stalled", "A run exceeded the maximum duration and was cancelled and retried.",
                         ["flow_name", "batch", "attempt"], {}),
    "Integration Degraded": ("integration-degraded",
                             "The continuous integration failed repeatedly or was deactivated; `command` rebuilds it.",
                             ["flow_name", "command"], {}),
    "Integration Recovered": ("integration-recovered", "The continuous integration succeeded again after being degraded.",
                              ["flow_name"], {}),
    "Integration Rebuilt": ("integration-rebuilt",
                            "The continuous integration was deleted and re-established from its last good point.",
                            ["flow_name"], {}),
    "Workflow Stuck": ("workflow-stuck",
                       "The workflow's AWS calls have kept failing transiently for FLOWPILOT_STALL_AFTER "
                       "(AppFlow down or throttling): it is not moving. Once per stuck period; the worker keeps "
                       "draining with backoff and the workflow resumes by itself when AWS answers again. "
                       "`flow_name`, `batch` and `attempt` are set when the stuck call concerns a flow or batch.",
                       ["error", "transient"], {"transient": {"const": True}}),
    "Records Not Sent": ("records-not-sent",
                         "A run ended successfully but AppFlow could not write some of its records to Customer "
                         "Profiles (record-level failures). `error` is AppFlow's message (from the execution record), "
                         "`records_failed` / `records_processed` the counts. A batch within `max_record_failures` "
                         "succeeded, marked (status `backfilling` or later); beyond it the batch and the workflow "
                         "failed (status `failed`) and `command` redrives it: a redrive runs the batch's window "
                         "again, so the records already written are written a second time, as `recommendation` "
                         "says. For the continuous flow (`batch` absent) the records are not pulled again. Once "
                         "per batch attempt or live run.",
                         ["flow_name", "records_failed", "records_processed", "max_record_failures", "error",
                          "recommendation", "action", "command"], {}),
    "Workflow Paused": ("workflow-paused",
                        "The SaaS application's API allowance behind `connector_profile` is spent (Salesforce "
                        "REQUEST_LIMIT_EXCEEDED): the workflow starts no batch until `retry_at`, then resumes by "
                        "itself. The refused attempt does not count against the retry budget. Once per refused "
                        "batch attempt.",
                        ["flow_name", "batch", "attempt", "error", "transient", "retry_at", "recommendation",
                         "action", "command", "connector_profile"],
                        {"transient": {"const": True}, "action": {"const": "wait"},
                         "retry_at": {"description": "When the workflow resumes its starts (the paused batch starts again)"}}),
    "Batch Waiting For Run Slot": ("batch-waiting-for-run-slot",
                                   "The shared run budget has refused the batch a run slot for "
                                   "FLOWPILOT_SLOT_WAIT_ALERT (default 15 min): every slot on `connector_profile` "
                                   "(FLOWPILOT_PROFILE_RUN_LIMIT) or of the account (FLOWPILOT_ACCOUNT_RUN_LIMIT) is "
                                   "in use. `error` says which limit and how full it was. The batch keeps asking "
                                   "(next at `retry_at`) and starts by itself when a slot frees, the longest waiting "
                                   "batch first; the wait costs no retry. Once per wait.",
                                   ["flow_name", "batch", "attempt", "error", "transient", "retry_at",
                                    "recommendation", "action", "command", "connector_profile"],
                                   {"transient": {"const": True}, "action": {"const": "wait"},
                                    "retry_at": {"description": "When the batch next asks for a slot"}}),
    "Batch Split": ("batch-split",
                    "A batch run failed for size or time (a run or query time limit, too many records): "
                    "instead of retrying the same window, flowpilot split it in two and runs the halves "
                    "(`halves`) as batches of their own, under new flow names; the split batch's flow is "
                    "deleted. `error` is AppFlow's message. Splits recurse down to the workflow's split "
                    "floor; at the floor the failure is retried as usual (`Batch Retry Scheduled`). Once "
                    "per split batch.",
                    ["flow_name", "batch", "attempt", "error", "transient", "halves"],
                    {"transient": {"const": True}}),
    "Workflow Unreadable": ("workflow-unreadable",
                            "A stored workflow cannot be read back (hand-edited, or written by an incompatible "
                            "version); every reconcile pass skips it and reports it again under the same "
                            "`event_id`. No workflow could be read, so the common members carry what the stored "
                            "item still says (empty strings where it says nothing readable) and `progress` is "
                            "all zeros.",
                            ["error"], {}),
}

# Members whose constraints a detail type replaces rather than narrows.
REPLACED = {
    "Workflow Unreadable": {
        "workflow_id": {"type": "string", "minLength": 1,
                        "description": "The id the stored item's key names (the key itself if it names none)"},
        "domain": {"type": "string", "description": "The stored document's domain, if still readable"},
        "object_type": {"type": "string", "description": "The stored document's object type, if still readable"},
        "connector": {"type": "string", "description": "The stored document's connector, if still readable"},
        "status": {"type": "string", "description": "The stored item's status attribute, if any"},
        "error": {"type": "string", "description": "Why the stored item does not read back"},
    },
}


def schema(detail_type, slug, description, extra_required, extra):
    props = dict(BASE)
    props.update(OPTIONAL_MEMBERS)
    for name, constraint in extra.items():
        props[name] = dict(props[name], **constraint)
    props.update(REPLACED.get(detail_type, {}))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://flowpilot.dev/schemas/health/{slug}.json",
        "title": f"flowpilot health event: {detail_type}",
        "description": description,
        "type": "object",
        "required": ["detail-type", "source", "detail"],
        "properties": {
            "detail-type": {"const": detail_type},
            "source": {"const": "flowpilot"},
            "detail": {
                "type": "object",
                "required": sorted(BASE.keys()) + extra_required,
                "properties": props,
                "additionalProperties": True,
            },
        },
    }


for detail_type, (slug, description, extra_required, extra) in EVENTS.items():
    path = HERE / f"{slug}.json"
    path.write_text(json.dumps(schema(detail_type, slug, description, extra_required, extra), indent=2) + "\n")
    print(path.name)

# Example policy set, the Rego twin of cedar/policies.cedar: same rules, same ids,
# same decisions (the shared cases.toml checks both). Default deny.
package wardgate.authz

import rego.v1

read_tools := {"search_records", "read_record", "search_docs"}

write_tools := {"update_record", "delete_record"}

session_methods := {
	"initialize", "ping", "server/discover", "tools/list", "prompts/list",
	"resources/list", "resources/templates/list",
	"tasks/get", "tasks/result", "tasks/list", "tasks/cancel",
	"wardgate/listen", "subscriptions/listen",
}

subject := input.subject

tenant := object.get(subject, "tenant", null)

has_tenant if {
	is_string(tenant)
	tenant != ""
}

resource_tenant := t if {
	t := input.resource.tenant
	is_string(t)
} else := ""

# Groups are transitive as in cedar/entities.json: editors are staff.
parent_groups := data.groups

groups contains g if some g in subject.groups

groups contains p if {
	some g in subject.groups
	some p in object.get(parent_groups, g, [])
}

name := object.get(input.action, "name", "")

# --- permits (the ids match the Cedar @id annotations) ---

permits contains "session-and-lists" if {
	input.action.method in session_methods
	has_tenant
	input.action.kind == "none"
}

permits contains "read-tools-humans" if {
	input.action.method == "tools/call"
	"staff" in groups
	subject.kind == "human"
	name in read_tools
}

permits contains "read-tools-agents" if {
	input.action.method == "tools/call"
	subject.kind == "agent"
	"crm.read" in subject.scopes
	name in read_tools
}

permits contains "write-tools-editors" if {
	input.action.method == "tools/call"
	input.action.upstream == "crm"
	"editors" in groups
	subject.kind == "human"
	subject.mfa == true
	name in write_tools
}

permits contains "write-tools-agents" if {
	input.action.method == "tools/call"
	input.action.upstream == "crm"
	subject.kind == "agent"
	"crm.write" in subject.scopes
	name == "update_record"
}

permits contains "prompts" if {
	input.action.method == "prompts/get"
	name == "summarize_account"
	has_tenant
}

# --- forbids ---

subject_tenant := tenant if has_tenant else := ""

forbids contains "tenant-isolation" if {
	input.action.kind != "none"
	resource_tenant != subject_tenant
}

after_hours if input.context.hour < 7

after_hours if input.context.hour >= 19

after_hours if input.context.weekday >= 6

forbids contains "after-hours-writes" if {
	input.action.method == "tools/call"
	name in write_tools
	after_hours
	not "oncall" in groups
}

forbids contains "high-risk-writes" if {
	input.action.method == "tools/call"
	input.context.risk >= 50
	name in write_tools
}

forbids contains "high-risk-network" if input.context.risk >= 90

# --- obligations of the determining permits ---

obligations := {"max_result_bytes": 65536, "redact": ["date_of_birth", "ssn"]} if {
	"read-tools-agents" in permits
} else := {}

# --- the decision: a forbid wins; without a permit, default deny ---

default decision := {"allow": false, "reasons": ["default-deny"]}

decision := {"allow": false, "reasons": forbids} if count(forbids) > 0

decision := {"allow": true, "reasons": permits, "obligations": obligations} if {
	count(forbids) == 0
	count(permits) > 0
}

"""Print the settings table of docs/server.md from the Settings class (the source of truth)."""

from bastion.server.settings import Settings

print("| setting | environment | default | what it does |")
print("|---|---|---|---|")
for name, field in Settings.model_fields.items():
    print(f"| `{name}` | `BASTION_{name.upper()}` | `{field.get_default(call_default_factory=True)}` | {field.description} |")

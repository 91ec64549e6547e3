"""The Shoppers table: the shopper-state stream as columns with units, each row linked to
that shopper's events in Explore."""

from __future__ import annotations

import json
import urllib.parse

from panels import LOKI, Json, loki, override, panel

# ShopperView fields shown, in order: field → (column title, unit).
COLUMNS = {
    "status": ("Status", "string"),
    "userName": ("Shopper", "string"),
    "membershipType": ("Membership", "string"),
    "location": ("Location", "string"),
    "activeFeature": ("Activity", "string"),
    "sessionSeconds": ("Session", "s"),
    "cartValue": ("Cart", "currencyUSD"),
    "itemsInCart": ("Items", "none"),
    "productsViewed": ("Products viewed", "none"),
    "lastAction": ("Last action", "string"),
}
NUMERIC = ("sessionSeconds", "cartValue", "itemsInCart", "productsViewed")
# Kept in the rows for the link, not shown: ids are long and may be pseudonyms.
HIDDEN = "userId"
# One shopper's events; the link fills in the row's userId.
SHOPPER_EVENTS = '{job="shopper-events"} | json | userId="%s"'


def explore_url() -> str:
    """Grafana's Explore on the event-stream datasource, querying the row's shopper's events
    over the dashboard's time range."""
    pane = {
        "datasource": LOKI["uid"],
        "queries": [
            {
                "refId": "A",
                "datasource": LOKI,
                "editorMode": "code",
                "queryType": "range",
                "expr": SHOPPER_EVENTS % "${__data.fields.userId:percentencode}",
            }
        ],
        "range": {"from": "${__from}", "to": "${__to}"},
    }
    panes = json.dumps({"shopper": pane}, separators=(",", ":"))
    # Grafana fills in ${...} before following the link, so those stay as they are.
    return "/explore?schemaVersion=1&orgId=1&panes=" + urllib.parse.quote(panes, safe="${}:._")


def shoppers_table() -> Json:
    """Every shopper the exporter holds, newest first; a click on the name opens its events."""
    names = [*COLUMNS, HIDDEN]
    link = {
        "title": "Events of ${__data.fields.userName} in Explore",
        "type": "link",
        "url": explore_url(),
        "icon": "external link",
        "tooltip": "This shopper's events over the dashboard's time range",
        "tags": [],
        "asDropdown": False,
        "targetBlank": False,
        "includeVars": False,
        "keepTime": False,
    }
    overrides = [
        override("byName", title, unit=unit, **({"links": [link]} if name == "userName" else {}))
        for name, (title, unit) in COLUMNS.items()
    ]
    overrides.append(override("byName", HIDDEN, unit="string", custom__hidden=True))
    return panel(
        "table",
        "Shoppers",
        [loki('{job="shopper-state"} | json', max_lines=1000)],
        w=24,
        h=11,
        description="Every shopper the exporter holds: status, session, cart and activity. "
        "Click a shopper's name for their events in Explore.",
        options={
            "frameIndex": 0,
            "showHeader": True,
            "cellHeight": "sm",
            "footer": {"show": False, "reducer": ["sum"], "countRows": False},
            "sortBy": [{"displayName": COLUMNS["cartValue"][0], "desc": True}],
        },
        defaults={
            "custom": {"align": "auto", "inspect": False, "filterable": True},
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        "online": {"text": "● online", "color": "green", "index": 0},
                        "offline": {"text": "○ offline", "color": "text", "index": 1},
                    },
                }
            ],
        },
        overrides=overrides,
        no_value="No shoppers yet: push updates or start the demo",
        transformations=[
            # `| json` turns the ShopperView line into labels; the table shows some of them.
            {"id": "extractFields", "options": {"source": "labels", "replace": True}},
            {"id": "filterFieldsByName", "options": {"include": {"names": names}}},
            {
                "id": "convertFieldType",
                "options": {
                    "fields": {},
                    "conversions": [
                        {"targetField": name, "destinationType": "number"} for name in NUMERIC
                    ],
                },
            },
            {
                "id": "organize",
                "options": {
                    "excludeByName": {},
                    "indexByName": {name: i for i, name in enumerate(names)},
                    "renameByName": {name: title for name, (title, _) in COLUMNS.items()},
                },
            },
        ],
    )

"""The built-in statistics by name: adding one is one file in this package plus one line here."""

from __future__ import annotations

#: name -> "module:Class" inside this package
BUILTIN: dict[str, str] = {
    "epg": "epg:Epg",
    "pearson": "pearson:Pearson",
    "mi": "mi:MutualInformation",
}

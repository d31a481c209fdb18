"""Reading a report back for the tests: the element ids, the tables (with the id of the heading above each), every
start tag and the text, parsed with the standard library's HTML parser."""

from html.parser import HTMLParser


class ReportPage(HTMLParser):
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.tables: list[tuple[str, list[list[str]]]] = []  # (id of the nearest heading/section above, rows)
        self.text_parts: list[str] = []
        self._anchor = ""
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def table(self, anchor: str, k: int = 0) -> list[list[str]]:
        """The body rows (header excluded) of the k-th table under the heading or section with id `anchor`."""
        found = [rows for a, rows in self.tables if a == anchor]
        return found[k][1:]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if "id" in attrs:
            self.ids.append(attrs["id"])
            self._anchor = attrs["id"]
        if tag == "table":
            self.tables.append((self._anchor, []))
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1][1].append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text_parts.append(data)
        if self._cell is not None:
            self._cell.append(data)

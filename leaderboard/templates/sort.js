(function () {
  "use strict";
  function sortKey(row, column) {
    var cell = row.cells[column];
    if (!cell) { return null; }
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (raw === "") { return null; }
    var number = Number(raw);
    return isNaN(number) ? raw.toLowerCase() : number;
  }
  function compare(a, b) {
    if (typeof a !== typeof b) { return typeof a === "number" ? -1 : 1; }
    return a < b ? -1 : a > b ? 1 : 0;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = Array.from(table.tHead.rows[0].cells);
    headers.forEach(function (header, column) {
      header.tabIndex = 0;
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); header.click(); }
      });
      header.addEventListener("click", function () {
        var direction = header.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
        header.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
        table.classList.add("sorted");
        var body = table.tBodies[0];
        var items = Array.from(body.rows).map(function (row, index) {
          return { row: row, key: sortKey(row, column), index: index };
        });
        items.sort(function (a, b) {
          if (a.key === null || b.key === null) {  // empty cells last in both directions
            return (a.key === null) - (b.key === null) || a.index - b.index;
          }
          return direction * compare(a.key, b.key) || a.index - b.index;
        });
        items.forEach(function (item) { body.appendChild(item.row); });
      });
    });
  });
})();

// Parses LogQL with Grafana's own grammar (@grafana/lezer-logql), the way Grafana's Loki data
// source validates a query: a query is valid when its syntax tree has no error node.
// stdin: a JSON array of queries; stdout: a JSON array, per query, of the error nodes found
// ({from, to, near}), the names of the node types in the tree, and every label name the query
// reads or writes with the node type it sits in ({name, in}: Matcher, NumberFilter, Grouping,
// LabelFormatMatcher, ...).
import { readFileSync } from "node:fs";
import { parser } from "@grafana/lezer-logql";

const queries = JSON.parse(readFileSync(0, "utf8"));
const results = queries.map((query) => {
  const errors = [];
  const nodes = new Set();
  const labels = [];
  const cursor = parser.parse(query).cursor();
  do {
    nodes.add(cursor.type.name);
    if (cursor.type.name === "Identifier") {
      let context = cursor.node.parent;
      while (context && context.type.name === "Labels") context = context.parent;
      labels.push({ name: query.slice(cursor.from, cursor.to), in: context ? context.type.name : "" });
    }
    if (cursor.type.isError) {
      errors.push({ from: cursor.from, to: cursor.to, near: query.slice(Math.max(0, cursor.from - 10), cursor.to + 10) });
    }
  } while (cursor.next());
  return { errors, nodes: [...nodes].sort(), labels };
});
process.stdout.write(JSON.stringify(results));

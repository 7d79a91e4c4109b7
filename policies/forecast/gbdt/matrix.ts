/**
 * The feature matrix the learner trains and predicts on: one column-major Float64Array
 * (row r, column c at `data[c * rows + r]`) with the column names, never an object per
 * row. NaN is a missing value. Helpers build one from rows or columns, for tests and callers.
 */
export interface Matrix {
  data: Float64Array;
  rows: number;
  cols: number;
  names: string[];
}

export function matrixFromColumns(columns: Record<string, ArrayLike<number>>): Matrix {
  const names = Object.keys(columns);
  const rows = names.length === 0 ? 0 : (columns[names[0] as string] as ArrayLike<number>).length;
  const data = new Float64Array(rows * names.length);
  names.forEach((name, c) => {
    const col = columns[name] as ArrayLike<number>;
    if (col.length !== rows) throw new Error(`column ${name} has ${col.length} values, expected ${rows}`);
    data.set(col, c * rows);
  });
  return { data, rows, cols: names.length, names };
}

/** `rows[r][c]`; `null` or `undefined` is missing (NaN). */
export function matrixFromRows(rows: ArrayLike<number | null | undefined>[], names: string[]): Matrix {
  const n = rows.length;
  const data = new Float64Array(n * names.length);
  for (let r = 0; r < n; r++) {
    const row = rows[r] as ArrayLike<number | null | undefined>;
    if (row.length !== names.length) throw new Error(`row ${r} has ${row.length} values, expected ${names.length}`);
    for (let c = 0; c < names.length; c++) data[c * n + r] = row[c] ?? Number.NaN;
  }
  return { data, rows: n, cols: names.length, names };
}

/** The rows `from` (inclusive) to `to` (exclusive), as a new matrix. */
export function sliceRows(x: Matrix, from: number, to: number): Matrix {
  const rows = to - from;
  const data = new Float64Array(rows * x.cols);
  for (let c = 0; c < x.cols; c++) data.set(x.data.subarray(c * x.rows + from, c * x.rows + to), c * rows);
  return { data, rows, cols: x.cols, names: [...x.names] };
}

/**
 * The forecasting dataset's public surface (what `herd forecast` in control/ uses): the
 * training table from recorded samples, its CSV format, and the feature names.
 */
export { buildTable, buildTableFromDir, labelLeaks, type BuildOptions, type TrainingTable } from './build.ts';
export { KEY_COLUMNS, LABEL_COLUMN, parseCsvTable, splitCsvLine, tableToCsv, toMatrix, type CsvTable } from './csv.ts';
export { CONTAINER_FEATURES, FEATURES, HOST_FEATURES } from './features.ts';
export { parseSysbenchLine, opsReports, type OpsReport } from './sysbench.ts';
export { parseTime } from '../export.ts';

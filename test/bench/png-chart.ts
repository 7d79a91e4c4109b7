/**
 * PNG charts for benchmark reports: a Vega-Lite spec compiled (vega-lite), rendered to SVG
 * headless (vega's `renderer: 'none'`, no canvas or browser), and rasterised by resvg
 * (@resvg/resvg-js) with the system's DejaVu Sans (Debian's fonts-dejavu-core, installed by
 * provisioning). Well-kept libraries over a hand-drawn SVG: axes, scales and legends come
 * out right for any data.
 */
import { writeFileSync } from 'node:fs';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export type ChartSpec = TopLevelSpec;

/** Renders the spec to a PNG (scale 2 for a sharp image) and writes it to `file`. */
export async function writePngChart(file: string, spec: ChartSpec): Promise<void> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG(2);
  view.finalize();
  const png = new Resvg(svg, { background: 'white', font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng();
  writeFileSync(file, png);
}

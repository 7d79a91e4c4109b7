import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, loadXgboostModel, matrixFromRows } from './index.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const read = (file: string): unknown => JSON.parse(readFileSync(join(FIXTURES, file), 'utf8'));

interface Cases {
  xgboost: string;
  names: string[];
  rows: (number | null)[][];
  predictions: number[];
}

describe('XGBoost JSON import (fixtures from make-fixtures.py)', () => {
  for (const name of ['small', 'nan', 'deep']) {
    it(`predicts like XGBoost itself: ${name}`, () => {
      const cases = read(`${name}.cases.json`) as Cases;
      const model = loadModel(read(`${name}.model.json`));
      const width = (cases.rows[0] as unknown[]).length;
      const x = matrixFromRows(cases.rows, cases.names.length > 0 ? cases.names : Array.from({ length: width }, (_, i) => `f${i}`));
      const pred = model.predict(x);
      let worst = 0;
      cases.predictions.forEach((want, i) => {
        worst = Math.max(worst, Math.abs((pred[i] as number) - want));
      });
      expect(worst).toBeLessThan(1e-5);
      expect(model.featureNames).toEqual(cases.names);
    });
  }

  it('the fixtures cover NaNs and a deep model', () => {
    expect((read('nan.cases.json') as Cases).rows.flat().filter((v) => v === null).length).toBeGreaterThan(100);
    const deep = read('deep.model.json') as { learner: { gradient_booster: { model: { trees: { left_children: number[] }[] } } } };
    expect(deep.learner.gradient_booster.model.trees).toHaveLength(50);
  });

  it('gain importance from loss_changes, and a clear error for other columns', () => {
    const model = loadXgboostModel(read('small.model.json'));
    expect(model.importance()[0]?.feature).toMatch(/^x[1-5]$/);
    expect(() => model.predict(matrixFromRows([[1, 2, 3, 4, 6]], ['x1', 'x2', 'x3', 'x4', 'cpu']))).toThrow(/missing column\(s\): x5; extra column\(s\): cpu/);
  });

  it('survives a round trip through Herd’s format', () => {
    const cases = read('nan.cases.json') as Cases;
    const model = loadModel(read('nan.model.json'));
    const again = loadModel(JSON.parse(JSON.stringify(model.toJSON())));
    const x = matrixFromRows(cases.rows, Array.from({ length: (cases.rows[0] as unknown[]).length }, (_, i) => `f${i}`));
    expect([...again.predict(x)]).toEqual([...model.predict(x)]);
  });

  it('refuses what it cannot predict', () => {
    const model = read('small.model.json') as { learner: { objective: { name: string } } };
    model.learner.objective.name = 'binary:logistic';
    expect(() => loadModel(model)).toThrow(/objective binary:logistic is not supported/);
  });

  it('reads XGBoost 3.1\'s base_score list "[5E-1]" as 0.5, and refuses a multi-target list', () => {
    const cases = read('small.cases.json') as Cases;
    const x = matrixFromRows(cases.rows, cases.names);
    const json = read('small.model.json') as { learner: { learner_model_param: { base_score: string } } };
    const plain = json.learner.learner_model_param.base_score;
    const want = [...loadModel(json).predict(x)];
    json.learner.learner_model_param.base_score = `[${plain}]`;
    expect([...loadModel(json).predict(x)]).toEqual(want);
    json.learner.learner_model_param.base_score = '[5E-1,2.5E-1]';
    expect(() => loadModel(json)).toThrow(/base_score \[5E-1,2\.5E-1\] holds 2 values \(a multi-target model\); only single-target regression is supported/);
    json.learner.learner_model_param.base_score = '[]';
    expect(() => loadModel(json)).toThrow(/base_score \[\] holds no value/);
    json.learner.learner_model_param.base_score = '[abc]';
    expect(() => loadModel(json)).toThrow(/base_score \[abc\] is not a number/);
  });

  it('takes what the model predicts from the booster attribute herd_label (bst.set_attr), none without it', () => {
    expect(loadModel(read('small.model.json')).label).toBeUndefined();
    const json = read('small.model.json') as { learner: { attributes?: Record<string, unknown> } };
    json.learner.attributes = { ...json.learner.attributes, herd_label: 'label' };
    const model = loadModel(json);
    expect(model.label).toBe('label');
    expect(loadModel(JSON.parse(JSON.stringify(model.toJSON()))).label).toBe('label');
    json.learner.attributes.herd_label = '';
    expect(() => loadModel(json)).toThrow(/herd_label "" is not a column name/);
  });
});

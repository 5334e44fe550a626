/** Every scenario, by id (the order `npm run hil` runs them in). */
import type { Scenario } from './scenario.ts';
import { upgrade } from '../scenarios/upgrade.ts';
import { badUpdateScenario } from '../scenarios/bad-update.ts';
import { powerCutScenario } from '../scenarios/power-cut.ts';
import { rollbackScenario } from '../scenarios/rollback.ts';
import { bootTableScenario } from '../scenarios/boot-table.ts';
import { agentScenario } from '../scenarios/agent.ts';
import { layerScenario } from '../scenarios/layer.ts';
import { kargsScenario } from '../scenarios/kargs.ts';
import { blessScenario } from '../scenarios/bless.ts';
import { liveScenario } from '../scenarios/live.ts';

export const SCENARIOS: Scenario[] = [upgrade, badUpdateScenario, powerCutScenario, rollbackScenario, bootTableScenario, agentScenario, layerScenario, kargsScenario, blessScenario, liveScenario];

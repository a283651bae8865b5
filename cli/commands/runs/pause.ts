// `tenet runs pause`
import { signalCommand } from './signal.js';

export const pauseCommand = signalCommand('pause', 'pause a run: no new batches start until it is resumed');

// `tenet runs cancel`
import { signalCommand } from './signal.js';

export const cancelCommand = signalCommand('cancel', 'cancel a run; rows already written stay, none is half-written');

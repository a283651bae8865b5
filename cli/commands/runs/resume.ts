// `tenet runs resume`
import { signalCommand } from './signal.js';

export const resumeCommand = signalCommand('resume', 'resume a paused run');

// The `tenet` command.
import { Command, CommanderError } from 'commander';
import { auditCommand } from './commands/audit.js';
import { codecServerCommand } from './commands/codec-server.js';
import { constitutionCommand } from './commands/constitution.js';
import { demoCommand } from './commands/demo.js';
import { exportCommand } from './commands/export.js';
import { modelsCommand } from './commands/models.js';
import { raterCommand } from './commands/rater.js';
import { runCommand } from './commands/run.js';
import { runsCommand } from './commands/runs.js';
import { scoreCommand } from './commands/score.js';
import { devCommand } from './commands/dev.js';
import { migrateCommand } from './commands/migrate.js';
import { statusCommand } from './commands/status.js';
import { workerCommand } from './commands/worker.js';
import { uiCommand } from './commands/ui.js';
import { exitCodes, handleError } from './errors.js';

const program = new Command('tenet')
  .description('Constitutional AI / RLAIF as durable workflows')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride()
  .addHelpText(
    'after',
    `
Exit codes: 0 ok; 1 invalid input (bad file, flag value or id); 2 usage error;
            3 a part of the stack is down or unreachable; 4 a dev stack is already running;
            70 internal error (a bug).
Environment (the README's "Deployment on a cluster" describes each):
  your own cluster   TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE; DATABASE_URL (sslmode, sslrootcert, sslcert, sslkey in the URL)
  Temporal TLS       TEMPORAL_TLS (true|false), TEMPORAL_TLS_CA, TEMPORAL_TLS_CERT + TEMPORAL_TLS_KEY (mTLS, both or neither),
                     TEMPORAL_TLS_SERVER_NAME, TEMPORAL_API_KEY (Temporal Cloud; implies TLS)
  secrets            TENET_CODEC_KEYS (payload encryption keys, id:base64,…) or TENET_CODEC_KEY + TENET_CODEC_KEY_ID;
                     TENET_UI_TOKEN (console and codec server beyond 127.0.0.1)
  workers            TENET_ARTIFACTS (trainer jobs' data, checkpoints and models; shared by every worker), TENET_PYTHON,
                     TENET_TORCH_THREADS, TENET_TRAINER_PREIMPORT (true|false), CUDA_VISIBLE_DEVICES, HF_HUB_OFFLINE
  dev stack          TENET_HOME (state folder, default .tenet), TENET_TEMPORAL_PORT, TENET_TEMPORAL_UI_PORT, TENET_PG_PORT, TEMPORAL_CLI`,
  )
  .addCommand(devCommand)
  .addCommand(statusCommand)
  .addCommand(demoCommand)
  .addCommand(runCommand)
  .addCommand(runsCommand)
  .addCommand(auditCommand)
  .addCommand(raterCommand)
  .addCommand(exportCommand)
  .addCommand(modelsCommand)
  .addCommand(scoreCommand)
  .addCommand(constitutionCommand)
  .addCommand(workerCommand)
  .addCommand(codecServerCommand)
  .addCommand(uiCommand)
  .addCommand(migrateCommand);

// Subcommands inherit exitOverride so usage errors come back here with their exit code.
for (const command of program.commands) {
  command.exitOverride();
  for (const sub of command.commands) sub.exitOverride();
}

// `tenet export … | head` closes the pipe early; that is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(exitCodes.ok);
  throw error;
});

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    const helpOrVersion = ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code);
    process.exit(helpOrVersion ? exitCodes.ok : exitCodes.usage);
  }
  handleError(error);
}

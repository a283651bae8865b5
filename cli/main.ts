// The `tenet` command.
import { Command, CommanderError } from 'commander';
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
  );

// Each command's module loads its own dependencies (the Temporal client or worker, drizzle, the
// console's server): importing all of them costs ~1 s of CPU more per invocation than importing one.
// So a known command name imports only that module; help, no command or an unknown one imports all,
// in this order, which is the order `tenet --help` lists them.
const commands: Record<string, () => Promise<Command>> = {
  dev: async () => (await import('./commands/dev.js')).devCommand,
  status: async () => (await import('./commands/status.js')).statusCommand,
  demo: async () => (await import('./commands/demo.js')).demoCommand,
  run: async () => (await import('./commands/run.js')).runCommand,
  runs: async () => (await import('./commands/runs.js')).runsCommand,
  audit: async () => (await import('./commands/audit.js')).auditCommand,
  rater: async () => (await import('./commands/rater.js')).raterCommand,
  export: async () => (await import('./commands/export.js')).exportCommand,
  models: async () => (await import('./commands/models.js')).modelsCommand,
  score: async () => (await import('./commands/score.js')).scoreCommand,
  constitution: async () => (await import('./commands/constitution.js')).constitutionCommand,
  worker: async () => (await import('./commands/worker.js')).workerCommand,
  'codec-server': async () => (await import('./commands/codec-server.js')).codecServerCommand,
  ui: async () => (await import('./commands/ui.js')).uiCommand,
  migrate: async () => (await import('./commands/migrate.js')).migrateCommand,
};
const named = process.argv[2];
const wanted = named !== undefined && Object.hasOwn(commands, named) ? [commands[named]!] : Object.values(commands);
for (const command of await Promise.all(wanted.map((load) => load()))) program.addCommand(command);

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

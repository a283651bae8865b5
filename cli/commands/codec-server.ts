// `tenet codec-server`: decodes tenet's encrypted Temporal payloads for the Temporal UI (set its
// codec endpoint to the printed URL) and for `temporal workflow show --codec-endpoint`.
import { Command } from 'commander';
import { z } from 'zod';
import { devKeyFile, EncryptionCodec } from '../../worker/codec.js';
import { startCodecServer } from '../../worker/codec-server.js';
import { configuredKeys, describeEncryption } from '../../worker/data-converter.js';
import { listenToken, tokenVariable } from '../../worker/http-guard.js';
import { getSettings } from '../context.js';
import { UserError } from '../errors.js';
import { parseOptions } from '../options.js';

const codecServerOptions = z.object({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.coerce.number({ error: 'expected a port number' }).int().min(0).max(65535).default(8888),
  corsOrigin: z.array(z.url({ error: 'expected an origin such as http://127.0.0.1:8233' })).optional(),
});

export const codecServerCommand = new Command('codec-server')
  .description(`decode encrypted Temporal payloads for the Temporal UI (127.0.0.1 only unless ${tokenVariable} is set)`)
  .option('--host <address>', 'address to listen on (anything but loopback needs TENET_UI_TOKEN)', '127.0.0.1')
  .option('--port <port>', 'port to listen on (0: any free one)', '8888')
  .option('--cors-origin <origin...>', 'browser origins allowed to call (default: the dev stack UI)')
  .action(async (raw: unknown) => {
    const options = parseOptions(codecServerOptions, raw);
    const settings = getSettings();
    const token = listenToken(options.host);
    const { keys, source } = configuredKeys(settings, true);
    if (!keys) throw new UserError(`no payload key: set TENET_CODEC_KEYS, or start \`tenet dev\` once so it makes ${devKeyFile(settings.home)}`);
    const uiPort = settings.ports.temporalUi;
    const origins = options.corsOrigin?.map((origin) => new URL(origin).origin) ?? [`http://127.0.0.1:${uiPort}`, `http://localhost:${uiPort}`];
    const server = await startCodecServer({ host: options.host, port: options.port, token, codec: new EncryptionCodec(keys), origins });
    console.log(`tenet codec-server: listening on ${server.url}${token ? ` (bearer token from ${tokenVariable} required)` : ''}; browser origins ${origins.join(', ')}`);
    console.log(`tenet codec-server: ${describeEncryption(keys, source)}`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await server.close();
  });

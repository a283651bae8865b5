// The one place that decides how tenet's clients (Connection.connect) and workers
// (NativeConnection.connect) reach Temporal: plain gRPC to the dev stack's own server; to your own
// (TEMPORAL_ADDRESS) with the TLS, mTLS and API-key settings of the environment (worker/settings.ts).
import { readSettingFile, type Settings } from './settings.js';

/** The options both Connection.connect and NativeConnection.connect take, as tenet sets them. */
export interface TemporalConnectOptions {
  address: string;
  tls?: {
    serverRootCACertificate?: Buffer;
    clientCertPair?: { crt: Buffer; key: Buffer };
    serverNameOverride?: string;
  };
  /** Sent as "Authorization: Bearer …". A secret: never log these options. */
  apiKey?: string;
}

/**
 * Connection options for the Temporal at `address`. The TLS and API-key settings apply only to
 * TEMPORAL_ADDRESS; any other address (the dev stack's server) gets plain gRPC. Certificate files
 * are read now, so a file changed since start-up (a rotated certificate) is what connects.
 */
export function temporalConnectOptions(settings: Pick<Settings, 'temporalAddress' | 'temporalTls' | 'temporalApiKey'>, address: string): TemporalConnectOptions {
  const options: TemporalConnectOptions = { address };
  if (address !== settings.temporalAddress) return options;
  const tls = settings.temporalTls;
  if (tls) {
    options.tls = {};
    if (tls.caFile) options.tls.serverRootCACertificate = readSettingFile(tls.caFile, 'TEMPORAL_TLS_CA');
    if (tls.clientCert) {
      options.tls.clientCertPair = {
        crt: readSettingFile(tls.clientCert.certFile, 'TEMPORAL_TLS_CERT'),
        key: readSettingFile(tls.clientCert.keyFile, 'TEMPORAL_TLS_KEY'),
      };
    }
    if (tls.serverName) options.tls.serverNameOverride = tls.serverName;
  }
  if (settings.temporalApiKey) {
    options.tls ??= {};
    options.apiKey = settings.temporalApiKey.reveal();
  }
  return options;
}

/** The address and how it is reached, for messages: "host:7233 (TLS, mTLS, API key)"; never the key. */
export function describeTemporal(options: TemporalConnectOptions): string {
  const how = [
    ...(options.tls ? ['TLS'] : []),
    ...(options.tls?.clientCertPair ? ['client certificate'] : []),
    ...(options.apiKey ? ['API key'] : []),
  ];
  return how.length > 0 ? `${options.address} (${how.join(', ')})` : options.address;
}

/** What to check when a connection with these options fails, or '' for plain gRPC. */
export function connectHint(options: TemporalConnectOptions): string {
  return options.tls ? ' (TLS is on: check that the server speaks TLS at that address and accepts these TEMPORAL_TLS_* / TEMPORAL_API_KEY settings)' : '';
}

// Real certificates for the TLS tests, made with the openssl CLI in a temporary folder: a CA, a
// server certificate for 127.0.0.1 / localhost, a client certificate and its key, a key that
// belongs to nothing, and a certificate that has expired.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

export interface TestCerts {
  dir: string;
  ca: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A valid key that belongs to no certificate here. */
  strayKey: string;
  /** Signed by the CA, valid until yesterday. */
  expiredCert: string;
  expiredKey: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function signed(dir: string, name: string, subject: string, options: { extensions?: string; days?: number; expired?: boolean }): void {
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], dir);
  const ext = path.join(dir, `${name}.ext`);
  writeFileSync(ext, options.extensions ?? 'basicConstraints=CA:FALSE\n');
  if (options.expired) {
    // `openssl ca` takes explicit dates; a minimal database makes it work without a config file.
    writeFileSync(path.join(dir, 'index.txt'), '');
    writeFileSync(path.join(dir, 'ca.cnf'), '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n');
    writeFileSync(path.join(dir, 'serial'), '1000\n');
    openssl(['ca', '-batch', '-config', 'ca.cnf', '-cert', 'ca.pem', '-keyfile', 'ca.key', '-in', `${name}.csr`, '-out', `${name}.pem`, '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-notext'], dir);
    return;
  }
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', String(options.days ?? 2), '-out', `${name}.pem`, '-extfile', ext], dir);
}

export function makeTestCerts(dir: string): TestCerts {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=tenet test CA'], dir);
  signed(dir, 'server', '/CN=temporal.test', { extensions: 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:temporal.test,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' });
  signed(dir, 'client', '/CN=tenet-worker', { extensions: 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' });
  signed(dir, 'expired', '/CN=expired', { expired: true });
  openssl(['genpkey', '-algorithm', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', 'stray.key'], dir);
  const at = (file: string) => path.join(dir, file);
  return {
    dir,
    ca: at('ca.pem'),
    caKey: at('ca.key'),
    serverCert: at('server.pem'),
    serverKey: at('server.key'),
    clientCert: at('client.pem'),
    clientKey: at('client.key'),
    strayKey: at('stray.key'),
    expiredCert: at('expired.pem'),
    expiredKey: at('expired.key'),
  };
}

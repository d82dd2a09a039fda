/**
 * The Certificate Service's metrics: what its gauges read from the store (pending requests, the
 * certificates it issued that are still valid) and the certificates it holds itself.
 */
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { observeCertService } from '../../observability/cert-service-metrics.js';
import { componentRegistry, notAfterOf } from '../../observability/registry.js';
import type { Database } from '../../store/database.js';
import { answeredCode } from './app.js';
import type { EnrollmentSchema } from './schema.js';
import type { CertificateService } from './service.js';

export function certServiceTelemetry(
  app: FastifyInstance,
  service: CertificateService,
  store: Database<EnrollmentSchema>,
  serverCertificate: () => string,
): Registry {
  const registry = componentRegistry('cert-service');
  const { db } = store;
  observeCertService(
    app,
    registry,
    {
      pendingRequests: async () => {
        const row = await db
          .selectFrom('requests')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('status', '=', 'pending')
          .executeTakeFirstOrThrow();
        return Number(row.n);
      },
      certificates: async () => {
        // The newest unrevoked certificate of each participant, while valid: one series each.
        const issued = await db
          .selectFrom('certificates')
          .select(['type', 'name', (eb) => eb.fn.max('not_after').as('not_after')])
          .where('revoked_at', 'is', null)
          .where('not_after', '>', Date.now())
          .groupBy(['type', 'name'])
          .execute();
        return [
          ['cert-service', notAfterOf(serverCertificate())],
          ['intermediate-ca', Date.parse(service.ca.intermediate.notAfter.toISOString())],
          ['root-ca', Date.parse(service.ca.root.notAfter.toISOString())],
          ...issued.map((c): [string, number] => [`${c.type}:${c.name}`, Number(c.not_after)]),
        ];
      },
    },
    { errorCode: answeredCode },
  );
  return registry;
}

// The failure converter of clients, workers and the workflow bundle (loaded by path, as the SDK
// requires): failure messages and stack traces travel in an encoded payload, which the payload
// codec then encrypts like any other.
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });

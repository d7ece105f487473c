import { applyDecorators } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation } from '@nestjs/swagger';

/**
 * Marks a REST route as a front for one method: the OpenAPI operation takes the method's name as
 * its `operationId`, from which the document gets the method's params and result schemas.
 */
export const RpcRoute = (method: string, summary: string) =>
  applyDecorators(ApiOperation({ operationId: method, summary }), ApiBearerAuth());

import { Module } from '@nestjs/common';
import { HistoryRepository } from './history.repository';
import { HistoryService } from './history.service';
import { NotificationBus } from './notification-bus';
import { PushFanout } from './push-fanout.service';
import { SessionRepository } from './session.repository';
import { SessionsService } from './sessions.service';

@Module({
  providers: [
    SessionRepository,
    HistoryRepository,
    HistoryService,
    SessionsService,
    NotificationBus,
    PushFanout,
  ],
  exports: [SessionRepository, HistoryService, SessionsService, NotificationBus],
})
export class SessionsModule {}

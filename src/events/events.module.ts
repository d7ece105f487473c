import { Module } from '@nestjs/common';
import { AgentsModule } from 'src/agents/agents.module';
import { MailboxModule } from 'src/mailbox/mailbox.module';
import { SessionsModule } from 'src/sessions/sessions.module';
import { EventsService } from './events.service';
import { ScheduleRepository } from './schedule.repository';
import { ScheduleService } from './schedule.service';
import { SleepTimerService } from './sleep-timer.service';

@Module({
  imports: [SessionsModule, MailboxModule, AgentsModule],
  providers: [EventsService, SleepTimerService, ScheduleService, ScheduleRepository],
  exports: [EventsService, ScheduleService],
})
export class EventsModule {}
